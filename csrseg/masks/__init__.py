"""Instance masks kept within their boxes and their COCO run-length encoding: what the heads' post-processing
makes and every later stage (inference, evaluation, export, serving) reads. On the ground floor, beside
:mod:`csrseg.errors`."""
