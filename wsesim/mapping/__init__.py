"""Where things go: layers to wafers (partition), stages to regions (layout), tensors
to PE blocks (tiling), all gathered in a Plan."""
