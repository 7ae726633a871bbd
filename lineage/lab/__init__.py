"""The poisoning lab: audits of a store (``audit``), the reference experiment on arrays
(``experiment``), its outputs (``output``) and the demo that runs the whole story (``demo``)."""
