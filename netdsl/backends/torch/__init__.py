"""The torch backend: the code generator (``codegen``), the runtime helpers and layers the
generated file embeds (``runtime``, ``layers``), state_dict files and timing helpers."""
