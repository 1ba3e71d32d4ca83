"""The web dashboard (issue 12): the ledger in a browser, served by the node's API app.

Pages are rendered on the server from the same view code the API and the CLI use
(``node.views``), so every figure on a page is the one ``commons ... --json`` prints. The
browser gets HTML, one stylesheet and one small script, all shipped in the wheel; the pages
work without the script, which only appends records as they arrive (``GET /api/v1/events``).
"""
