"""Domains: a base diffusion model, data, simulated users (oracles), validity and diversity.

Every domain implements :class:`prefalign.domains.base.Domain`; :func:`get_domain` builds one by
name and lists the valid names when given a wrong one.
"""
