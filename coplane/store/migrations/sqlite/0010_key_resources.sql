-- The resources a key may send events about: patterns such as "airflow.prod.*"; [] for any.
ALTER TABLE api_keys ADD COLUMN resources JSON NOT NULL DEFAULT '[]';
