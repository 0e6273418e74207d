"""MLflow's models-from-code entry: copied into each registered version's MLflow model and run
when it is loaded, so the python model is built from code, never unpickled."""

from mlflow.models import set_model

from shelfops.registry.pyfunc import ShelfopsModel

set_model(ShelfopsModel())
