"""The demo (``make demo``, ``tfic up --demo``): the embedded digits dataset and the steps run against
live services. An application like the CLI: the core and the services never import it."""
