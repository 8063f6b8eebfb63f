"""`flip demo dermatology`: a multimodal dermatology federation from source systems to a report."""
