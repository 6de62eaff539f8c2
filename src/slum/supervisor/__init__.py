"""Process supervision: one task per instance, states in supervisord's vocabulary."""

from slum.supervisor.instance import Instance
from slum.supervisor.states import State
from slum.supervisor.supervisor import Supervisor

__all__ = ["Instance", "State", "Supervisor"]
