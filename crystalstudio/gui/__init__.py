"""PySide6 desktop application: main window, panels, views and QThread workers."""
