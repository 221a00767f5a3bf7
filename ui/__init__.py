"""airlock user interfaces: the `airlock` command and the Gradio app."""

__all__: list[str] = []
