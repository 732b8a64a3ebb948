"""Geo: grid and CIM layers, CRS policy, placement, impact zones and map outputs.

WGS84 (EPSG:4326) inside, CGCS2000 (EPSG:4490) treated as equal; GCJ-02 and BD-09
accepted on input; metric work in the CGCS2000 3-degree Gauss-Krüger zone of the
data's longitude.
"""
