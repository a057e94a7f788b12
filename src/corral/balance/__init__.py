"""Replicas of one model: which one gets a request (cache-aware, least-loaded, round-robin), which are
ejected (circuit breakers), and how many requests run or wait (the gateway's gate). No I/O here: the
drivers and the gateway report what happened and ask what to do."""

from .balancer import STRATEGIES, Balancer, Outcome, Replica, Strategy
from .breaker import Breaker
from .config import ModelPolicy, model_policy, replicas_of
from .gate import Gate, Refused
from .prefix import PrefixIndex, prefix_chain

__all__ = [
    "STRATEGIES",
    "Balancer",
    "Breaker",
    "Gate",
    "ModelPolicy",
    "Outcome",
    "PrefixIndex",
    "Refused",
    "Replica",
    "Strategy",
    "model_policy",
    "prefix_chain",
    "replicas_of",
]
