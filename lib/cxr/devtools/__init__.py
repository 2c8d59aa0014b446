"""Development and test harness: not part of the runtime package, and not in its wheel.

``services`` starts the real local servers (MariaDB, an S3 endpoint, SecantusDB, sshd) that
``cxr services`` and the tests use. No runtime module imports this package (an import-linter
contract checks it); only the ``cxr services`` command does, and says so when it is absent.
"""
