-- The MLflow backend database is created by the image (POSTGRES_DB=mlflow); Optuna's studies get their own.
CREATE DATABASE optuna;
