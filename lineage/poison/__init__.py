"""The poisoning science, on numpy arrays only (no store): trigger patterns (``triggers``), the
estimators every gate and experiment fits (``estimators``), the trigger scan of a trained model
(``trigger_scan``), row detectors (``detectors``) and their calibration (``calibration``: p-values
against the data's own null, the Cauchy combination, Benjamini-Hochberg), the triggers found in
the data (``candidates``), which source carries the poison (``blame``) and the metrics
(``metrics``)."""
