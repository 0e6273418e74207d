-- Run once by the postgres image on an empty data folder: MLflow's backend store beside the
-- operational store (database shelfops, made from POSTGRES_DB).
CREATE DATABASE mlflow OWNER shelfops;
