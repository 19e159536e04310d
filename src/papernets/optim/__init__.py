"""Optimizer factory and learning-rate schedules."""

from papernets.optim.factory import create_optimizer
from papernets.optim.schedules import LRSchedule, create_schedule

__all__ = ["LRSchedule", "create_optimizer", "create_schedule"]
