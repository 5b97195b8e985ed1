"""vst: real-time video style transfer.

Pixels flow one way: source -> engine (generator) -> temporal blend -> sinks.
The core (this package) holds what every stage shares: generators, styles, flow and metrics.
"""

__version__ = "0.1.0"
