"""Review before training: the policy (``policy``), frozen snapshots (``snapshots``), the shadow
evaluation (``evaluation``), the gates that approve, reject or revoke (``gates``) and the approval
in force that every load path checks (``approval``)."""
