"""Stage 1: the dashboard's widgets (``dashboard``), pure rendering (``render``) and the history query.

``notebooks/dashboard.ipynb`` only builds :class:`cxr.app.dashboard.Dashboard` and displays it;
``cxr dashboard`` serves that notebook with Voila.
"""
