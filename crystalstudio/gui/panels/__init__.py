"""One module per panel: generator, training, phasing, diffuse."""


def available_panels() -> list:
    from .generator_panel import GeneratorPanel

    return [GeneratorPanel]
