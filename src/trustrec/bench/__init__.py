"""trustrec.bench"""
