"""People: users and roles (``users``), sessions (``sessions``), the append-only audit trail
(``audit``) and the jupyter_server identity hooks the dashboard's Voila uses (``jupyter``).

An adapter floor beside :mod:`cxr.dicom`: it talks to the metadata DB (``cxr.stores``) and
knows no stage. Stages call :func:`cxr.auth.audit.append` to audit what they do.
"""
