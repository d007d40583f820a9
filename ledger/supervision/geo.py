"""Distances and geofences on the scale of a warehouse yard.

Great-circle distance is the haversine formula; a polygon is handled in a local flat projection
(equirectangular around its first corner), exact enough over the few kilometres a fence spans.
"""

from __future__ import annotations

import math

from ledger.supervision.config import Circle, Polygon

__all__ = ["distance_m", "outside_by_m"]

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def outside_by_m(fence: Circle | Polygon, lat: float, lon: float) -> float:
    """How far outside ``fence`` the point lies, in metres (0 or less: inside)."""
    if isinstance(fence, Circle):
        return distance_m(fence.lat, fence.lon, lat, lon) - fence.radius_m
    origin_lat, origin_lon = fence.polygon[0]
    scale = math.cos(math.radians(origin_lat))

    def xy(point_lat: float, point_lon: float) -> tuple[float, float]:
        return (math.radians(point_lon - origin_lon) * scale * EARTH_RADIUS_M, math.radians(point_lat - origin_lat) * EARTH_RADIUS_M)

    corners = [xy(a, b) for a, b in fence.polygon]
    px, py = xy(lat, lon)
    inside = False
    nearest = math.inf
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1]):
        if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside  # ray casting
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy or 1.0)))
        nearest = min(nearest, math.hypot(px - (x1 + t * dx), py - (y1 + t * dy)))
    return -nearest if inside else nearest
