"""semipose: semi-supervised 2D human pose estimation (PoseCons / PoseDual)."""

__version__ = "0.1.0"
