"""The Golem backend: ``ClassifierService`` (yapapi), its dispatcher, and ``GolemBackend``.

Import ``golem_backend.golem.backend.GolemBackend`` explicitly: it pulls in yapapi.
``layout`` and ``protocol`` import no yapapi.
"""
