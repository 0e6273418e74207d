from shelfops.config.load import apply_overrides, load_config
from shelfops.config.schema import DataConfig, ShelfopsConfig, SourceConfig, SyntheticConfig

__all__ = [
    "DataConfig", "ShelfopsConfig", "SourceConfig", "SyntheticConfig", "apply_overrides",
    "load_config",
]
