"""`python evaluate.py stage=<name> [overrides]`: evaluation stages (see conf/stage/)."""

import hydra

from cogumi.entry import exit_on_bad_overrides, run_stage


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg):
    return run_stage(cfg, entry="evaluate")


if __name__ == "__main__":
    exit_on_bad_overrides("evaluate")
    main()
