"""Live model monitoring: precision, recall and mAP@0.5 of the predictions against reviewed
labels per model version and week, and drift (population stability index) of scores and image
intensities against the reference stored with the model (``metrics``, ``drift``, ``job``).

A stage: it reads the warehouse and the model registry, and knows no other stage.
"""
