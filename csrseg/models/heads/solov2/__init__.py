"""SOLOv2 head: grids of dynamic kernels, targets by grid cell, eq. 6 losses, Matrix NMS."""

from csrseg.models.heads.solov2.head import HeadOutput, SOLOv2Head

__all__ = ["HeadOutput", "SOLOv2Head"]
