"""The hug edge's parts that are not routes: request parameters and bodies (``inputs``), who
may call a route (``scopes``), what every request and response goes through (``middleware``),
and the command line's conventions (``cli``). api.py declares the routes with them."""
