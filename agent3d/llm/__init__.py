"""Language-model backends behind one small interface (:class:`agent3d.llm.base.Backend`)."""
