"""The coded concepts of cxr's DICOM structured reports: one table from the model's classes to codes.

Every code below is taken from pydicom's copy of the DICOM standard's code tables (PS3.16), so
its value and meaning are the standard's. SNOMED CT (``SCT``) where the standard has a concept
for the finding, the DICOM Controlled Terminology (``DCM``) where it has one and SNOMED CT does
not, and cxr's private coding scheme ``99CXR`` where neither has one.

=================== ================ ======== =================================================
model class         code             scheme   meaning (and why this code)
=================== ================ ======== =================================================
Aortic enlargement  ``AORTIC-ENL``   99CXR    Aortic enlargement: no standard concept for an
                                              enlarged aortic knob/arch (SCT 373133002 is
                                              the aortic *root*, an echocardiographic finding)
Cardiomegaly        ``287272002``    SCT      Cardiomegaly (CID 12248)
ILD                 ``112004``       DCM      Abnormal interstitial pattern (CID 6102, chest
                                              CAD findings: what a radiograph of ILD shows)
Infiltration        ``112121``       DCM      Infiltrate (CID 6102)
Nodule/Mass         ``NODULE-MASS``  99CXR    Nodule/Mass: one class for two concepts, SCT
                                              27925004 Nodule and SCT 4147007 Mass
any other class     ``CXR-<n>``      99CXR    the class name, ``n`` its index in the model
=================== ================ ======== =================================================

The report's other concepts: the score of a box is a NUM ``(111012, DCM, "Certainty of
Finding")`` (CID 6048, CAD certainty) in UCUM ``1`` (no units, 0-1); the summary of the image
is ``(111017, DCM, "CAD Processing and Findings Summary")`` with ``111242`` "All algorithms
succeeded; with findings" or ``111241`` "...; without findings" (CID 6047); the procedure
reported is ``(168537006, SCT, "Plain radiography")``; the model is the device observer
(``(121007, DCM, "Device")``).
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99CXR"
PRIVATE_SCHEME_NAME = "cxr chest X-ray findings"
#: generate_uid(entropy_srcs=["cxr 99CXR coding scheme"]): fixed, it names the scheme
PRIVATE_SCHEME_UID = "2.25.269543719968693076967302820044970250587"

#: The model's class -> its finding code (the table in the module docstring).
CLASS_CODES: dict[str, Code] = {
    "Aortic enlargement": Code("AORTIC-ENL", PRIVATE_SCHEME, "Aortic enlargement"),
    "Cardiomegaly": codes.SCT.Cardiomegaly,
    "ILD": codes.DCM.AbnormalInterstitialPattern,
    "Infiltration": codes.DCM.Infiltrate,
    "Nodule/Mass": Code("NODULE-MASS", PRIVATE_SCHEME, "Nodule/Mass"),
}

SCORE = codes.DCM.CertaintyOfFinding
SCORE_UNIT = codes.UCUM.NoUnits
SUMMARY = codes.DCM.CADProcessingAndFindingsSummary
WITH_FINDINGS = codes.DCM.AllAlgorithmsSucceededWithFindings
WITHOUT_FINDINGS = codes.DCM.AllAlgorithmsSucceededWithoutFindings
PROCEDURE = codes.SCT.PlainRadiography
DEVICE = codes.DCM.Device
FINDING = codes.DCM.Finding


def finding_code(class_name: str, class_id: int) -> Code:
    """The finding code of a model class: the table's, or a private ``CXR-<class_id>`` code."""
    code = CLASS_CODES.get(class_name)
    if code is not None:
        return code
    return Code(f"CXR-{int(class_id)}", PRIVATE_SCHEME, str(class_name)[:64] or f"class {class_id}")


def class_of(code_value: str, scheme: str) -> str | None:
    """The model class a finding code stands for (the table's classes), or None."""
    for name, code in CLASS_CODES.items():
        if (code.value, code.scheme_designator) == (code_value, scheme):
            return name
    return None
