"""SLA definitions (YAML and API), pure evaluation rules, the evaluator and incidents."""
