"""semcc: Semantic-CC, remote-sensing image change captioning guided by change detection.

The network of paper Eq. 1 (``semcc.models``), its LEVIR data (``semcc.data``), the Lightning task
(``semcc.tasks``), published-protocol metrics (``semcc.metrics``) and the ``semcc`` command
(``semcc.main``).
"""

__version__ = "0.1.0"
