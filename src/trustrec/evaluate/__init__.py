"""trustrec.evaluate"""
