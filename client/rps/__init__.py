"""rps: the Python client and the ``rps`` command of the representer-point explanation service.

This distribution (``rps-explain-client``) needs only httpx, numpy and tqdm. The service
itself lives in the ``rps-explain`` distribution (packages ``app``, ``workers``,
``representer``, ``models_store``, ``rps_server``), which adds its commands to ``rps``.
"""
