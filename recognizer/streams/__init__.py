"""Live video as a service: cameras defined over HTTP (``operations``), run by stream runners
(``runner``) that hold leases in the store, and what they see pushed out as events (the store,
``webhooks``, ``mqtt``) and frames (``live``). See docs/streams.md for the design."""
