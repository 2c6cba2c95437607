"""trustrec.data"""
