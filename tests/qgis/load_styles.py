"""Open a circles GeoPackage in QGIS (PyQGIS, offscreen) and report what QGIS sees.

Run with the Python that has Debian's ``python3-qgis``:
``QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis/load_styles.py circles.gpkg out.png``.
Prints one JSON document: per layer its validity, renderer type, rule labels, the
styles stored in the database, and the default style's name; renders the communities,
edges and facilities layers with their default styles into ``out.png``.
"""

import json
import os
import sys

from qgis.core import (
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

path, png = sys.argv[1], sys.argv[2]
app = QgsApplication([], False)
app.initQgis()
out = {}
layers = []
for name in ("communities", "edges", "facilities", "isochrones", "service_areas", "nodes"):
    lyr = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    info = {"valid": lyr.isValid()}
    if lyr.isValid():
        renderer = lyr.renderer()
        info["renderer"] = renderer.type()
        if renderer.type() == "RuleRenderer":
            info["rules"] = [r.label() for r in renderer.rootRule().children()]
            info["filters"] = [r.filterExpression() for r in renderer.rootRule().children()]
        n, ids, names, descriptions, err = lyr.listStylesInDatabase()
        info["styles"] = list(names)
        info["n_default"] = n
        info["labels"] = bool(lyr.labelsEnabled())
        info["features"] = lyr.featureCount()
        if name in ("communities", "edges", "facilities"):
            layers.append(lyr)
    out[name] = info
settings = QgsMapSettings()
settings.setLayers(layers[::-1])  # first is drawn on top: facilities, edges, communities
settings.setBackgroundColor(QColor(255, 255, 255))
settings.setOutputSize(QSize(1000, 800))
settings.setDestinationCrs(layers[0].crs())
settings.setExtent(layers[0].extent())
job = QgsMapRendererSequentialJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(png, "png")
out["errors"] = [f"{e.layerID}: {e.message}" for e in job.errors()]
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS 3.22 may crash tearing down layers at exit; everything is written
