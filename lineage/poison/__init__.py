"""The poisoning science, on numpy arrays only (no store): trigger patterns (``triggers``), the
estimators every gate and experiment fits (``estimators``), the trigger scan of a trained model
(``trigger_scan``), row detectors (``detectors``) and the metrics (``metrics``)."""
