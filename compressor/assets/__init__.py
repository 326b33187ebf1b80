"""Package data (links to the source tree's recipes/, eval/ and export/targets/; real files in a wheel).

Read it through compressor.core.resources, never by a path into the checkout.
"""
