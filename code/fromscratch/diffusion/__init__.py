"""Stable Diffusion from its parts: shapes data, the four SD parts, the sampling loop, a mini SD trained here.

    from fromscratch.diffusion.parts import load_parts      # load_parts("mini") or a diffusers id/folder
    from fromscratch.diffusion.sampling import generate     # explicit loop: CFG, negative prompts, img2img
    from fromscratch.diffusion.shapes import make_shapes    # images, captions, exact masks, labels
    from fromscratch.diffusion.classifier import load_classifier, predict   # shape + colour judge
    from fromscratch.diffusion.testing import make_tiny_sd  # a tiny random SD for offline tests
"""
