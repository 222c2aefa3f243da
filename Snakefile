# Active preference alignment: every campaign (domain x method x seed) is a chain of rounds
# propose (fit, sample, select) -> answer (a built-in user; query + observe for an oracle
# command), then a final evaluation and the aggregation.
# Run: snakemake --profile profiles/default   (see README.md and config/README.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


check_campaigns()  # every campaign of the run resolved at plan time: a bad setting stops here
check_base_models()  # warns when models.digits differs from the shipped model's training


include: "workflow/rules/job_server.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/rounds.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/population.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
