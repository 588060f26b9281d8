"""Deciding when the instance has drained: a pure policy, traffic signals and a small driver."""
