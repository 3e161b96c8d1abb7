"""Puts the checkout root on Hydra's search path so `experiments/` and `sweeps/` are config groups."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from cogumi.paths import PROJECT_ROOT


class CogumiSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="cogumi", path=f"file://{PROJECT_ROOT}")
