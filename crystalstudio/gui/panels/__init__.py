"""One module per panel: generator, training, phasing, diffuse."""


def available_panels() -> list:
    """Panels in tab order."""
    from .diffuse_panel import DiffusePanel
    from .generator_panel import GeneratorPanel
    from .phasing_panel import PhasingPanel
    from .training_panel import TrainingPanel

    return [GeneratorPanel, TrainingPanel, PhasingPanel, DiffusePanel]
