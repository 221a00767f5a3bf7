"""airlock graph package: state, runtime context, policy, persistence and the graph builder."""

__all__: list[str] = []
