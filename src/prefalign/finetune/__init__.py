"""Fine-tuning a diffusers base model on what a campaign learnt (docs/finetune.md):
:func:`~prefalign.finetune.train.denoising_fit` (weighted denoising score matching: the FKC
sampler distilled, or PAPA's likes) and :func:`~prefalign.finetune.train.preference_fit`
(Diffusion-DPO on pairs), in the modes full, split at ``t_split`` and peft LoRA; the fine-tuned
model folder (:mod:`~prefalign.finetune.model_dir`); the mixture2d check against a closed form
(:mod:`~prefalign.finetune.closed_form`). Imports torch, diffusers (and peft for LoRA) only in
its modules."""
