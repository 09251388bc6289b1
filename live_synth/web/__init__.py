"""`live-synth play --web`: a local page that shows the frames being made and plays notes into the live path.

`protocol` (the versioned WebSocket messages and their validation), `link` (events up and frames down between the
control process and the generation process), `server` (aiohttp, in the control process), `static/` (the page).
"""
