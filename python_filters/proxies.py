"""ParaView proxies of Globscope's algorithms: thin decorated subclasses, category "Globscope".

Proxy ``name``s are a compatibility contract (``.pvsm`` files refer to them): never rename them.
The topology proxies use TTK's property names (``ScalarField``, ``PersistenceThreshold``,
``ThresholdIsAbsolute``, ``TreeType``) and port layout.

Importing this module needs ParaView's Python (``paraview.util.vtkAlgorithm``); on ParaView 5.11
with Python >= 3.11 install ``plugin/compat/globscope_pv_compat`` first (the plugin entry file
and ``usercustomize.py`` do).
"""

from paraview.util.vtkAlgorithm import smdomain, smhint, smproperty, smproxy

from globscope.names import BN_MODES, DEVICES, IMAGE_DIMS, MANIFOLD_METHODS, Choices, TreeType
from globscope.settings import FitSettings, LandscapeSettings, TopologySettings
from python_filters import CATEGORY
from python_filters import algorithms as A

MENU = f'<ShowInMenu category="{CATEGORY}" />'


def _enum(choices: Choices):
    """An enumeration of the choices' stable codes (what a saved state stores)."""
    entries = "".join(f'<Entry value="{c}" text="{n}"/>' for n, c in choices.codes.items())
    return smdomain.xml(f'<EnumerationDomain name="enum">{entries}</EnumerationDomain>')


def _values(values):
    """An enumeration whose values are the values themselves (e.g. latent dimensions)."""
    entries = "".join(f'<Entry value="{v}" text="{v}"/>' for v in values)
    return smdomain.xml(f'<EnumerationDomain name="enum">{entries}</EnumerationDomain>')


def _scalar_field(base):
    """TTK's ``ScalarField`` property (a point scalar array of the input) for a proxy of ``base``,
    as a method to assign in the proxy's class body (ParaView reads the class's own members).

    Declared like ParaView's own Contour's: the domain defaults to the input's active scalars
    (``log_loss`` in Globscope's landscapes), never to an empty ``[None, '0']``."""
    @smproperty.xml("""
        <StringVectorProperty name="ScalarField" label="Scalar Field" command="SetInputArrayToProcess"
                              element_types="0 0 0 0 2" number_of_elements="5">
          <ArrayListDomain name="array_list" attribute_type="Scalars">
            <RequiredProperties><Property name="Input" function="Input"/></RequiredProperties>
          </ArrayListDomain>
          <Documentation>The scalar field (point data) to analyse.</Documentation>
        </StringVectorProperty>""")
    def SetInputArrayToProcess(self, idx, port, connection, field, name):
        return base.SetInputArrayToProcess(self, idx, port, connection, field, name)

    return SetInputArrayToProcess


def _file(base, method: str, name: str, extension: str, description: str, **attributes):
    """A file-name property (with ParaView's file chooser) forwarding to ``base.<method>``, as a
    method to assign in the proxy's class body."""
    forward = getattr(base, method)

    def setter(self, v):
        return forward(self, v)

    setter.__name__ = method  # ParaView takes the property's command from it, when decorating
    setter = smhint.filechooser(extensions=extension, file_description=description)(setter)
    setter = smdomain.filelist()(setter)
    return smproperty.stringvector(name=name, default_values="", **attributes)(setter)


def _filter(name: str, label: str, input_types, *then):
    """A filter proxy in the Globscope menu whose port 0, ``Input``, takes ``input_types``; ``then``:
    further class decorators (a second port), applied after it, innermost first."""
    def declare(cls):
        cls = smproperty.input(name="Input", port_index=0)(
            smdomain.datatype(dataTypes=list(input_types), composite_data_supported=False)(cls))
        for decorate in then:
            cls = decorate(cls)
        return smproxy.filter(name=name, label=label)(smhint.xml(MENU)(cls))
    return declare


def _second_input(name: str, data_type: str, optional: bool = False):
    """Port 1 of a filter, ``name``, taking ``data_type`` (for :func:`_filter`'s ``then``)."""
    def declare(cls):
        if optional:
            cls = smhint.xml("<Optional/>")(cls)
        cls = smdomain.datatype(dataTypes=[data_type], composite_data_supported=False)(cls)
        return smproperty.input(name=name, port_index=1)(cls)
    return declare


@smproxy.reader(name="GlobscopeCheckpointSetReader", label="Globscope Checkpoint Set Reader",
                file_description="Globscope checkpoint set", filename_patterns="manifest.json")
@smhint.xml(MENU)
class GlobscopeCheckpointSetReader(A.CheckpointSetReader):
    SetFileName = _file(A.CheckpointSetReader, "SetFileName", "FileName", "json",
                        "Globscope checkpoint set manifest", panel_visibility="never")

    @smproperty.stringvector(name="Variants", information_only="1")
    def GetVariants(self):
        return A.CheckpointSetReader.GetVariants(self)

    @smproperty.intvector(name="ParameterCount", information_only="1")
    def GetParameterCount(self):
        return A.CheckpointSetReader.GetParameterCount(self)

    @smproperty.intvector(name="NumberOfCheckpoints", information_only="1")
    def GetNumberOfCheckpoints(self):
        return A.CheckpointSetReader.GetNumberOfCheckpoints(self)


@_filter("GlobscopeManifold", "Manifold", ["vtkTable"])
class GlobscopeManifold(A.ManifoldFilter):
    @smproperty.intvector(name="Method", default_values=MANIFOLD_METHODS.code(FitSettings.method))
    @_enum(MANIFOLD_METHODS)
    def SetMethod(self, v):
        return A.ManifoldFilter.SetMethod(self, v)

    @smproperty.intvector(name="LatentDimension", default_values=FitSettings.dim)
    @_values(IMAGE_DIMS)
    def SetLatentDimension(self, v):
        return A.ManifoldFilter.SetLatentDimension(self, v)

    @smproperty.intvector(name="Seed", default_values=FitSettings.seed)
    def SetSeed(self, v):
        return A.ManifoldFilter.SetSeed(self, v)

    @smproperty.intvector(name="Epochs", default_values=0)
    @smdomain.intrange(min=0, max=20000)
    def SetEpochs(self, v):
        """Autoencoder training epochs (0 = the manifold's default)."""
        return A.ManifoldFilter.SetEpochs(self, v)

    @smproperty.stringvector(name="Task", default_values="")
    def SetTask(self, v):
        return A.ManifoldFilter.SetTask(self, v)

    SetManifoldFile = _file(A.ManifoldFilter, "SetManifoldFile", "ManifoldFile", "pt", "Globscope manifold")


@_filter("GlobscopeLossLandscape", "Loss Landscape", ["vtkPolyData"])
class GlobscopeLossLandscape(A.LossLandscape):
    @smproperty.intvector(name="Resolution", default_values=LandscapeSettings.resolution)
    @smdomain.intrange(min=2, max=1024)
    def SetResolution(self, v):
        return A.LossLandscape.SetResolution(self, v)

    @smproperty.doublevector(name="Margin", default_values=LandscapeSettings.margin)
    @smdomain.doublerange(min=0.0, max=2.0)
    def SetMargin(self, v):
        return A.LossLandscape.SetMargin(self, v)

    @smproperty.stringvector(name="Task", default_values="")
    def SetTask(self, v):
        return A.LossLandscape.SetTask(self, v)

    @smproperty.intvector(name="Device", default_values=DEVICES.code(LandscapeSettings.device))
    @_enum(DEVICES)
    def SetDevice(self, v):
        return A.LossLandscape.SetDevice(self, v)

    @smproperty.intvector(name="BatchNormMode", default_values=BN_MODES.code(LandscapeSettings.bn))
    @_enum(BN_MODES)
    def SetBatchNormMode(self, v):
        return A.LossLandscape.SetBatchNormMode(self, v)


@_filter("GlobscopeProjectModels", "Project Models", ["vtkDataSet"],
         _second_input("Landscape", "vtkImageData", optional=True))
class GlobscopeProjectModels(A.ProjectModels):
    SetCheckpointSet = _file(A.ProjectModels, "SetCheckpointSet", "CheckpointSet", "json",
                             "Globscope checkpoint set manifest")


@_filter("GlobscopePersistenceDiagram", "Persistence Diagram (Globscope)", ["vtkImageData"])
class GlobscopePersistenceDiagram(A.PersistenceDiagram):
    SetInputArrayToProcess = _scalar_field(A.PersistenceDiagram)


@_filter("GlobscopeTopologicalSimplification", "Topological Simplification (Globscope)", ["vtkImageData"])
class GlobscopeTopologicalSimplification(A.TopologicalSimplification):
    SetInputArrayToProcess = _scalar_field(A.TopologicalSimplification)

    @smproperty.doublevector(name="PersistenceThreshold", default_values=TopologySettings.persistence)
    def SetPersistenceThreshold(self, v):
        """Pairs with persistence at most this are removed (a fraction of the value range unless
        ThresholdIsAbsolute)."""
        return A.TopologicalSimplification.SetPersistenceThreshold(self, v)

    @smproperty.intvector(name="ThresholdIsAbsolute", default_values=int(TopologySettings.absolute))
    @smdomain.xml('<BooleanDomain name="bool"/>')
    def SetThresholdIsAbsolute(self, v):
        return A.TopologicalSimplification.SetThresholdIsAbsolute(self, v)


@_filter("GlobscopeMergeTree", "Merge Tree (Globscope)", ["vtkImageData"])
class GlobscopeMergeTree(A.MergeTree):
    SetInputArrayToProcess = _scalar_field(A.MergeTree)

    @smproperty.intvector(name="TreeType", default_values=int(TreeType.JOIN))
    @smdomain.xml('<EnumerationDomain name="enum">' + "".join(
        f'<Entry value="{int(t)}" text="{t.name.title()} Tree"/>' for t in TreeType) + '</EnumerationDomain>')
    def SetTreeType(self, v):
        """TTK's choices; Globscope's engine computes the join tree (basins of a loss) and says so
        when another is asked for."""
        return A.MergeTree.SetTreeType(self, v)


@_filter("GlobscopeBasins", "Basins", ["vtkPointSet"], _second_input("Segmentation", "vtkImageData"))
class GlobscopeBasins(A.Basins):
    pass


@smproxy.reader(name="GlobscopeValidationReader", label="Globscope Validation Reader",
                file_description="Globscope validation (curves, saddle paths, re-basin)",
                extensions="vtp")
@smhint.xml(MENU)
class GlobscopeValidationReader(A.ValidationReader):
    SetFileName = _file(A.ValidationReader, "SetFileName", "FileName", "vtp",
                        "Globscope validation polylines", panel_visibility="never")

    @smproperty.stringvector(name="Manifold", default_values="")
    def SetManifold(self, v):
        """Keep the curves of this manifold (autoencoder, pca, …); empty: all of them."""
        return A.ValidationReader.SetManifold(self, v)


PROXIES = {c.__name__: c for c in (GlobscopeCheckpointSetReader, GlobscopeValidationReader, GlobscopeManifold,
                                   GlobscopeLossLandscape, GlobscopeProjectModels, GlobscopePersistenceDiagram,
                                   GlobscopeTopologicalSimplification, GlobscopeMergeTree, GlobscopeBasins)}

__all__ = list(PROXIES)
