"""The FHIR edge: fetching from the EHR's server and reading R4 resources."""
