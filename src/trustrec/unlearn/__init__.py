"""trustrec.unlearn"""
