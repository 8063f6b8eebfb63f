"""The demo journeys: synthetic hospitals -> stores -> hub -> approval -> federation -> report."""
