"""All panels present (Phasing: test_gui_phasing.py; Training: test_gui_training.py; Diffuse: test_gui_diffuse.py)."""


def test_all_panels_present(window):
    assert [p.title for p in window.panels] == ["Generator", "Training", "Phasing", "Diffuse"]
